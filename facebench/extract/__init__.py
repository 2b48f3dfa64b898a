"""Images -> model -> feature store."""
