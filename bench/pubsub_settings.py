"""Settings for `bench.token_stream --layer pubsub`: the project's settings with the
channel layer swapped for channels_redis' pub/sub layer (one PUBLISH per message, read by
one subscription per process), to compare with the default list-based layer."""

from tekton_site.settings import *  # noqa: F403
from tekton_site.settings import REDIS_URL, TEKTON_CHANNEL_PREFIX

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": TEKTON_CHANNEL_PREFIX},
    }
}
