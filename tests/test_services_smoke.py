import sqlalchemy as sa


def test_database_fixture_gives_a_working_empty_database(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT 1")).scalar() == 1
        assert sa.inspect(connection).get_table_names() == []
    engine.dispose()


def test_redis_fixture_answers(redis_server: str) -> None:
    import redis

    assert redis.Redis.from_url(redis_server).ping()
