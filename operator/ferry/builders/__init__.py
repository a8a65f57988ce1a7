"""Pure builders: validated specs in, Kubernetes manifests out. No I/O, no kopf."""
