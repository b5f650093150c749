print("probattnd: under construction")
