"""Input data: MovieLens loading, validation, synthesis and the time split (:mod:`.movielens`)."""
