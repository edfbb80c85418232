"""The notifications service: tells the citizen (e-mail, SMS, printable letter) and the
adviser (their screen) that an operator answered a referral, exactly once per answer,
and announces each citizen notification on the `notifications` topic."""
