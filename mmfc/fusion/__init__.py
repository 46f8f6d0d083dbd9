"""Stage 4: late fusion of the branches' scores, fitted on validation or on out-of-fold scores of the
training side, never on test."""
