"""Stage 4: late fusion of the RGB and skeleton scores, fitted on validation only."""
