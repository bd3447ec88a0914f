"""Business rules. Each function takes its collaborators (adapters, clocks) as arguments."""
