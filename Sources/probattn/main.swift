print("probattn: under construction")
