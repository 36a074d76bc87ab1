"""REST API of the synthesis app: characters, stories, frames and exports (one module per
resource group; ``synthesis.api_urls`` registers them on one router)."""
