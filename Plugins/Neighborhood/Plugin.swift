// attention plugin: Neighborhood
