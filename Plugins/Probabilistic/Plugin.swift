// attention plugin: Probabilistic
