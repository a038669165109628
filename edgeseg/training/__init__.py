"""edgeseg.training"""
