"""Foundation's agent runtime (import package ``foundation_agent``).

What runs in every member pod of an Agent.
"""
