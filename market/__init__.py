"""Market data shared by training and streaming: tick schema, data sources, features."""
