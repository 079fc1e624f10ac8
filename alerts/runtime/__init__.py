"""The dispatcher's runtime: consuming, partitions, store, delivery, history."""
