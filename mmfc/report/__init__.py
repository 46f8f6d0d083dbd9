"""The report: accuracies, confusion matrix, training curves and the paper's ablation table."""
