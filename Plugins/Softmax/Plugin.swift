// attention plugin: Softmax
