import uvicorn

from relais_referral.app import create_app
from relais_referral.settings import ReferralSettings

settings = ReferralSettings()
uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
            timeout_graceful_shutdown=10)
