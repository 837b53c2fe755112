"""The recipe's settings module, imported at collection, before any fixture."""

import settings


def test_the_settings_name_this_workers_directory_and_port(worker_tmp_path, worker_id):
    assert worker_tmp_path / "cache" == settings.CACHE_DIR
    assert {"gw0": 9100, "gw1": 9110}[worker_id] == settings.METRICS_PORT
