"""Turn raw videos and questions into the HCRN/DualVGR feature, vocabulary and question files."""
