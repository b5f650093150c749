// attention plugin: Sigmoid
