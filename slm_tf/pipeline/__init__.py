"""The product's main job in one command: teacher -> plain student -> distilled student ->
pruned -> quantization-aware -> exported -> benchmarked -> report and model card."""
