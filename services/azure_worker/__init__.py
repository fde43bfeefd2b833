"""azure-worker: generation.requested (provider azure) → Azure OpenAI → generation.completed/failed, usage.recorded."""
