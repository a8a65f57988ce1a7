"""Feature computation: the engine behind ``ferry features`` (runs in a FeaturePipeline's Job)."""
