"""Tools around the product: fetching model and sample assets."""
