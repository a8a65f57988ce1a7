"""Model quality: the labels that say how served predictions turned out, joined on prediction ids."""
