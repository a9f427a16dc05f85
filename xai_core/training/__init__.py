"""Fine-tuning the 14-label ResNet-50 with box supervision: data bank, augmentation, losses, loop, validation."""
