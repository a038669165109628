"""edgeseg.data"""
