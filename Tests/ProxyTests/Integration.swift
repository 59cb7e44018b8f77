import Testing

/// The suites that start redis-server and ambassador processes run one at a time. A test that kills
/// a master and restarts it on the same port must not see that port handed to another test's
/// server (or ambassador) in between, which `freePort()` cannot rule out when suites run in parallel.
@Suite(.serialized) enum Integration {}
