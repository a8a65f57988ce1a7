"""Ferry's development harness: the local cluster (control plane from Go modules, a real node,
a KWOK fleet), the real services (MLflow, SeaweedFS, Prometheus), Ferry's image and the build-time
tools. It is a package of its own, installed by ``make`` for development and tests; the operator's
wheel and image carry none of it."""
