from app import load_config


def test_e():
    load_config()
