"""Build-time generators: every file derived from the code (CRDs, chart CRDs and RBAC, the
kustomize base, Argo CD health checks, the API reference) comes from here, through
``ferry crds`` (``--check`` fails when one is stale). Nothing at run time imports them."""
