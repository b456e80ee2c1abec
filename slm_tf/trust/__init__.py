"""Trust: calibrated probabilities, abstention on out-of-scope input, explanations."""
