"""Token-sampler agents: the K-of-N distribution (:mod:`agents.distributions`) and the
actor-critic networks (:mod:`agents.networks`). Kept import-free so that importing the
package stays cheap; import the submodules you need."""
