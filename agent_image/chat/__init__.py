"""What the built-in LLM agent (`foundation_agent.agents:ChatAgent`) is made of: its
configuration, the model client (an OpenAI-compatible chat completions API behind a sidecar
upstream), tools (other Agents' actions, found by capability), history bounds and metrics."""
