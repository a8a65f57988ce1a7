"""kopf wiring. This package is the only one that imports kopf."""
