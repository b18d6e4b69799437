"""Rules: the rule-set document, CEL expressions, and the pure evaluator. No I/O."""
