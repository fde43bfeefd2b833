"""openai-worker: generation.requested (provider openai) → OpenAI → generation.completed/failed, usage.recorded."""
