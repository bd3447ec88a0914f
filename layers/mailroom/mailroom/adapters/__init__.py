"""Data access: the only modules that touch boto3. Each adapter takes an optional client."""
