"""Parameter-efficient fine-tuning: LoRA on Dense kernels, BitFit, freezing the first layers,
adapters saved alone and merged into the base for export (``slm_tf.peft.lora``)."""
