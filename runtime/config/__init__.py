"""Settings, hardware profiles and the choice among them."""
