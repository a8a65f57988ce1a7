"""A/B/n experiments: sticky assignment of users to variants and the statistics that decide them."""
