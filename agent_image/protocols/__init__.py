"""The ecosystem's protocols in front of Foundation's tasks: A2A (between agents)."""
