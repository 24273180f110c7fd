"""Core: locations, cluster, hierarchy, graph helpers, reports, errors and config."""
