"""Settings (config/settings.toml) and the model config (config/model.toml): each read
once, by one loader, for every component."""
