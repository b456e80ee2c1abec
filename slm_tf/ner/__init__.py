"""Token classification (named entities): schemes, offsets, metrics."""
