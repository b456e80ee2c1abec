"""Trust in high-stakes domains: calibration, abstention, explanations, PII redaction, DP."""
