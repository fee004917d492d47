/// The configuration used when `portcullis` runs without `--config`: the demo set-up. No Redis,
/// no internet: it routes to the in-repo fake provider on 127.0.0.1:9000.
public enum DefaultConfiguration {
    public static let yaml = """
    server:
      listen: ["127.0.0.1:8080"]
      workers: auto
      max_connections: 10000
      max_header_bytes: 16384
      max_body_bytes: 4194304
      header_timeout: 10s
      keepalive_timeout: 75s
    providers:
      local: { base_url: "http://127.0.0.1:9000", kind: openai }
    models:
      chat-default:
        tiers:
          free: [{ target: local/gpt-4o-mini }]
          pro:  [{ target: local/gpt-4o, weight: 90 }, { target: local/gpt-4.1, weight: 10 }]
        default_tier: free
    routes:
      - path: /v1/chat/completions
        provider: local
        passthrough_models: true     # "chat-default" is routed by alias; other models go to local as is
        timeouts: { connect: 5s, first_byte: 60s, idle: 30s, total: 600s }
      - path: /v1/*
        provider: local
        timeouts: { connect: 5s, first_byte: 60s, idle: 30s, total: 600s }
    limits:                        # in this process's memory (no redis: section)
      default_tier: free
      per_user: { requests_per_minute: 600 }
      tiers:
        free: { requests_per_minute: 1200, tokens_per_minute: 2000000, max_concurrent_streams: 100 }
    log:
      level: info
      access: true

    """
}
