"""The feature updater on a real Redis keeps online features equal to the offline definition, applying each rating
once even when feedback is redelivered. Uses Redis DB 9 so the platform's feat:current is untouched."""

from __future__ import annotations

import pytest
import redis
from streaming_fixtures import load_history_snapshot, movielens_split

from streamml import names
from streamml.features import spec
from streamml.streaming.messages import Feedback
from streamml.streaming.updater import FeatureUpdaterHandler

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def test_updates_match_the_incremental_definition_and_redelivery_is_idempotent(redis_db: redis.Redis) -> None:
    history, stream, movies = movielens_split()
    offline = load_history_snapshot(redis_db, history, movies)

    sample = stream.head(3000)
    feedback = [
        Feedback(request_id=f"r{i}", user_id=int(r.userId), movie_id=int(r.movieId), rating=float(r.rating),
                 event_ts=int(r.timestamp))
        for i, r in enumerate(sample.itertuples())
    ]  # fmt: skip
    handler = FeatureUpdaterHandler(redis_db)
    applied = sum(handler.apply(feedback[i : i + 250]) for i in range(0, len(feedback), 250))
    assert applied == len(feedback)
    assert handler.apply(feedback[100:900]) == 0  # redelivered: nothing applied twice

    for f in feedback:
        offline.apply(f.user_id, f.movie_id, f.rating, f.event_ts)
    for user_id in {f.user_id for f in feedback}:
        assert spec.unpack_user(redis_db.get(names.user_features_key(1, user_id))) == offline.users[user_id]
    for movie_id in {f.movie_id for f in feedback}:
        online = spec.unpack_movie(redis_db.get(names.movie_features_key(1, movie_id)))
        assert online == offline.movies[movie_id]
    assert spec.unpack_globals(redis_db.get(names.globals_features_key(1))) == offline.globals
