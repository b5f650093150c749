// attention plugin: ContextPool
