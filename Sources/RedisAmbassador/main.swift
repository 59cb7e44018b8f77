print("redis-ambassador")
