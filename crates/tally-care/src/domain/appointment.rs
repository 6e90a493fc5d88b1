//! Appointments and what may happen to them: booked for a time slot with a physician, then
//! closed (the consultation took place and is priced), cancelled, or marked a no-show. Each
//! decision returns the event it produces, or refuses.

use chrono::TimeDelta;
use serde::Serialize;
use tally_kernel::time::Timestamp;
use tally_kernel::Money;
use uuid::Uuid;

use super::error::{CareError, Field};
use super::events::CareEvent;
use super::physician::Physician;
use super::tariff::{BilledMinutes, DurationError, Tariff};

/// Where an appointment is in its life. Only a booked one can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppointmentStatus {
    Booked,
    Closed,
    Cancelled,
    NoShow,
}

impl AppointmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AppointmentStatus::Booked => "booked",
            AppointmentStatus::Closed => "closed",
            AppointmentStatus::Cancelled => "cancelled",
            AppointmentStatus::NoShow => "no_show",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "booked" => Some(AppointmentStatus::Booked),
            "closed" => Some(AppointmentStatus::Closed),
            "cancelled" => Some(AppointmentStatus::Cancelled),
            "no_show" => Some(AppointmentStatus::NoShow),
            _ => None,
        }
    }
}

/// A time slot: it ends after it starts, at most a day later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Schedule {
    start: Timestamp,
    end: Timestamp,
}

impl Schedule {
    pub fn new(start: Timestamp, end: Timestamp) -> Result<Self, DurationError> {
        if end <= start {
            return Err(DurationError::NotAfterStart);
        }
        BilledMinutes::between(start, end)?;
        Ok(Self { start, end })
    }

    /// The slot of `minutes` from `start`.
    pub fn lasting(start: Timestamp, minutes: i64) -> Result<Self, DurationError> {
        let end = start
            .checked_add_signed(TimeDelta::minutes(minutes))
            .ok_or(DurationError::TooLong)?;
        Self::new(start, end)
    }

    pub fn start(&self) -> Timestamp {
        self.start
    }

    pub fn end(&self) -> Timestamp {
        self.end
    }

    /// The minutes the slot is priced for (rounded up, see [`BilledMinutes::between`]).
    pub fn minutes(&self) -> BilledMinutes {
        BilledMinutes::between(self.start, self.end).expect("a schedule lasts at most a day")
    }

    /// Whether two slots share any instant (an end is exclusive: back to back is fine).
    pub fn overlaps(&self, other: &Schedule) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// A request to book: who, with whom, when. Without an end the appointment lasts the
/// physician's default minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Booking {
    pub patient_id: Uuid,
    pub physician_id: Uuid,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
}

impl Booking {
    /// The slot this booking asks for with `physician`.
    pub fn schedule(&self, physician: &Physician) -> Result<Schedule, CareError> {
        let slot = match self.end {
            Some(end) => Schedule::new(self.start, end),
            None => Schedule::lasting(self.start, physician.details.default_minutes),
        };
        slot.map_err(|error| CareError::Duration {
            field: Field::ScheduledEnd,
            error,
        })
    }
}

/// Longest cancellation reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Why an appointment was cancelled: 1 to 500 characters, no control characters. Free text that
/// may describe the patient, so its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CancelReason(String);

impl CancelReason {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let text = raw.trim();
        if text.is_empty() {
            return Err("must not be blank; leave it out or send null instead");
        }
        if text.chars().count() > MAX_REASON_CHARS {
            return Err("must be at most 500 characters");
        }
        if text.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CancelReason(<redacted>)")
    }
}

/// What closing set: the real end, the minutes billed and the final price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    pub end: Timestamp,
    pub minutes: BilledMinutes,
    pub price: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appointment {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub physician_id: Uuid,
    pub status: AppointmentStatus,
    pub schedule: Schedule,
    /// The price of the scheduled slot, in the tariff's currency: what is billed until closing.
    pub scheduled_price: Money,
    /// Set when closed.
    pub closing: Option<Closing>,
    /// Set when cancelled, if a reason was given.
    pub cancel_reason: Option<CancelReason>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Appointment {
    /// Books `schedule` with `physician` for a patient the patients service accepted. `clash`
    /// is a booked appointment of the physician overlapping the slot, if any: the physician
    /// cannot be in two places, so the booking is refused.
    pub fn book(
        id: Uuid,
        patient_id: Uuid,
        physician: &Physician,
        schedule: Schedule,
        clash: Option<Uuid>,
        now: Timestamp,
    ) -> Result<(Appointment, CareEvent), CareError> {
        if let Some(clash) = clash {
            return Err(CareError::DoubleBooked {
                physician_id: physician.id,
                clash,
            });
        }
        let scheduled_price = physician.details.tariff.price(schedule.minutes());
        let appointment = Appointment {
            id,
            patient_id,
            physician_id: physician.id,
            status: AppointmentStatus::Booked,
            schedule,
            scheduled_price,
            closing: None,
            cancel_reason: None,
            created_at: now,
            updated_at: now,
        };
        let event = CareEvent::Booked {
            appointment_id: id,
            patient_id,
            physician_id: physician.id,
            scheduled_start: schedule.start(),
            scheduled_end: schedule.end(),
            scheduled_price_minor: scheduled_price.amount_minor,
            currency: scheduled_price.currency,
        };
        Ok((appointment, event))
    }

    fn ensure_booked(&self) -> Result<(), CareError> {
        match self.status {
            AppointmentStatus::Booked => Ok(()),
            status => Err(CareError::NotBooked {
                id: self.id,
                status,
            }),
        }
    }

    /// Document 000's close repeats the consultation's patient, physician and start: each must
    /// be the stored one, so that a client cannot close (and price) another consultation than
    /// the one it means. All differing fields are named.
    pub fn check_is(
        &self,
        patient_id: Uuid,
        physician_id: Uuid,
        start: Timestamp,
    ) -> Result<(), CareError> {
        let fields: Vec<Field> = [
            (Field::PatientId, patient_id == self.patient_id),
            (Field::PhysicianId, physician_id == self.physician_id),
            (Field::ScheduledStart, start == self.schedule.start()),
        ]
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(field, _)| field)
        .collect();
        if fields.is_empty() {
            Ok(())
        } else {
            Err(CareError::Mismatch {
                id: self.id,
                fields,
            })
        }
    }

    /// Closes the consultation at its real `end`: it is priced by `tariff` for the minutes from
    /// the scheduled start to `end` (rounded up, see [`BilledMinutes::between`]). Only a booked
    /// appointment can be closed, once.
    pub fn close(
        &mut self,
        tariff: &Tariff,
        end: Timestamp,
        now: Timestamp,
    ) -> Result<CareEvent, CareError> {
        self.ensure_booked()?;
        let start = self.schedule.start();
        let minutes = BilledMinutes::between(start, end).map_err(|error| CareError::Duration {
            field: Field::End,
            error,
        })?;
        let price = tariff.price(minutes);
        self.status = AppointmentStatus::Closed;
        self.closing = Some(Closing {
            end,
            minutes,
            price,
        });
        self.updated_at = now;
        Ok(CareEvent::Closed {
            appointment_id: self.id,
            patient_id: self.patient_id,
            physician_id: self.physician_id,
            start,
            end,
            duration_minutes: minutes.get(),
            price_minor: price.amount_minor,
            currency: price.currency,
        })
    }

    /// Cancels a booked appointment, with an optional reason.
    pub fn cancel(
        &mut self,
        reason: Option<CancelReason>,
        now: Timestamp,
    ) -> Result<CareEvent, CareError> {
        self.ensure_booked()?;
        self.status = AppointmentStatus::Cancelled;
        self.cancel_reason = reason.clone();
        self.updated_at = now;
        Ok(CareEvent::Cancelled {
            appointment_id: self.id,
            patient_id: self.patient_id,
            physician_id: self.physician_id,
            reason: reason.map(|r| r.0),
        })
    }

    /// Records that the patient did not come to a booked appointment.
    pub fn mark_no_show(&mut self, now: Timestamp) -> Result<CareEvent, CareError> {
        self.ensure_booked()?;
        self.status = AppointmentStatus::NoShow;
        self.updated_at = now;
        Ok(CareEvent::NoShow {
            appointment_id: self.id,
            patient_id: self.patient_id,
            physician_id: self.physician_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use tally_kernel::event::DomainEvent;
    use tally_kernel::Currency;

    use super::*;
    use crate::domain::physician::{PhysicianDetails, PhysicianName, DEFAULT_MINUTES};
    use crate::domain::tariff::Rule;

    fn at(text: &str) -> Timestamp {
        tally_kernel::time::from_db(text).unwrap()
    }

    fn now() -> Timestamp {
        at("2021-06-01T12:00:00Z")
    }

    fn physician() -> Physician {
        let tariff = Tariff::new(
            Rule::PerBlock { block_minutes: 15 },
            Money::new(5000, Currency::USD),
        )
        .unwrap();
        Physician::register(
            Uuid::now_v7(),
            PhysicianDetails {
                name: PhysicianName::parse("Dr. Ana Souza").unwrap(),
                tariff,
                default_minutes: DEFAULT_MINUTES,
            },
            now(),
        )
    }

    fn slot(start: &str, end: &str) -> Schedule {
        Schedule::new(at(start), at(end)).unwrap()
    }

    fn booked() -> (Appointment, Physician) {
        let doctor = physician();
        let schedule = slot("2021-07-01T08:30:00Z", "2021-07-01T09:00:00Z");
        let (appointment, _) = Appointment::book(
            Uuid::now_v7(),
            Uuid::now_v7(),
            &doctor,
            schedule,
            None,
            now(),
        )
        .unwrap();
        (appointment, doctor)
    }

    #[test]
    fn booking_prices_the_scheduled_slot_and_announces_it() {
        let doctor = physician();
        let (id, patient) = (Uuid::now_v7(), Uuid::now_v7());
        let schedule = slot("2021-07-01T08:30:00Z", "2021-07-01T09:05:00Z");
        let (appointment, event) =
            Appointment::book(id, patient, &doctor, schedule, None, now()).unwrap();
        assert_eq!(appointment.status, AppointmentStatus::Booked);
        assert_eq!(
            appointment.scheduled_price,
            Money::new(15000, Currency::USD),
            "35 minutes start 3 blocks"
        );
        assert_eq!(event.event_type(), "appointment.booked");
        assert_eq!(event.aggregate_type(), "appointment");
        assert_eq!(event.aggregate_id(), id.to_string());
        assert_eq!(
            event.data(),
            serde_json::json!({
                "appointment_id": id.to_string(),
                "patient_id": patient.to_string(),
                "physician_id": doctor.id.to_string(),
                "scheduled_start": "2021-07-01T08:30:00Z",
                "scheduled_end": "2021-07-01T09:05:00Z",
                "scheduled_price_minor": 15000,
                "currency": "USD",
            })
        );
    }

    #[test]
    fn a_physician_cannot_be_booked_twice_at_once() {
        let doctor = physician();
        let clash = Uuid::now_v7();
        let schedule = slot("2021-07-01T08:30:00Z", "2021-07-01T09:00:00Z");
        assert_eq!(
            Appointment::book(
                Uuid::now_v7(),
                Uuid::now_v7(),
                &doctor,
                schedule,
                Some(clash),
                now()
            )
            .unwrap_err(),
            CareError::DoubleBooked {
                physician_id: doctor.id,
                clash
            }
        );
    }

    #[test]
    fn slots_overlap_unless_back_to_back() {
        let a = slot("2021-07-01T08:30:00Z", "2021-07-01T09:00:00Z");
        assert!(a.overlaps(&slot("2021-07-01T08:59:59Z", "2021-07-01T09:30:00Z")));
        assert!(a.overlaps(&slot("2021-07-01T08:00:00Z", "2021-07-01T10:00:00Z")));
        assert!(a.overlaps(&slot("2021-07-01T08:40:00Z", "2021-07-01T08:50:00Z")));
        assert!(!a.overlaps(&slot("2021-07-01T09:00:00Z", "2021-07-01T09:30:00Z")));
        assert!(!a.overlaps(&slot("2021-07-01T08:00:00Z", "2021-07-01T08:30:00Z")));
    }

    #[test]
    fn a_slot_ends_after_it_starts_within_a_day() {
        let t = at("2021-07-01T08:30:00Z");
        assert_eq!(Schedule::new(t, t), Err(DurationError::NotAfterStart));
        assert_eq!(
            Schedule::new(t, t - TimeDelta::minutes(1)),
            Err(DurationError::NotAfterStart)
        );
        assert_eq!(
            Schedule::new(t, t + TimeDelta::minutes(1441)),
            Err(DurationError::TooLong)
        );
        assert_eq!(
            Schedule::lasting(t, 30).unwrap().end(),
            at("2021-07-01T09:00:00Z")
        );
    }

    #[test]
    fn without_an_end_a_booking_lasts_the_physician_default() {
        let doctor = physician();
        let booking = Booking {
            patient_id: Uuid::now_v7(),
            physician_id: doctor.id,
            start: at("2021-07-01T08:30:00Z"),
            end: None,
        };
        assert_eq!(
            booking.schedule(&doctor).unwrap(),
            slot("2021-07-01T08:30:00Z", "2021-07-01T09:00:00Z")
        );
        let backwards = Booking {
            end: Some(at("2021-07-01T08:00:00Z")),
            ..booking
        };
        assert_eq!(
            backwards.schedule(&doctor),
            Err(CareError::Duration {
                field: Field::ScheduledEnd,
                error: DurationError::NotAfterStart
            })
        );
    }

    #[test]
    fn closing_prices_the_real_duration_from_the_scheduled_start() {
        let (mut appointment, doctor) = booked();
        let later = at("2021-07-01T13:41:00Z");
        let event = appointment
            .close(&doctor.details.tariff, at("2021-07-01T13:40:00Z"), later)
            .unwrap();
        assert_eq!(appointment.status, AppointmentStatus::Closed);
        let closing = appointment.closing.unwrap();
        assert_eq!(closing.minutes.get(), 310);
        assert_eq!(closing.price, Money::new(21 * 5000, Currency::USD));
        assert_eq!(appointment.updated_at, later);
        assert_eq!(
            event.data(),
            serde_json::json!({
                "appointment_id": appointment.id.to_string(),
                "patient_id": appointment.patient_id.to_string(),
                "physician_id": doctor.id.to_string(),
                "start": "2021-07-01T08:30:00Z",
                "end": "2021-07-01T13:40:00Z",
                "duration_minutes": 310,
                "price_minor": 105000,
                "currency": "USD",
            })
        );
    }

    #[test]
    fn closing_refuses_an_end_before_the_start_and_changes_nothing() {
        let (mut appointment, doctor) = booked();
        let before = appointment.clone();
        assert_eq!(
            appointment.close(&doctor.details.tariff, at("2021-07-01T08:29:59Z"), now()),
            Err(CareError::Duration {
                field: Field::End,
                error: DurationError::EndBeforeStart
            })
        );
        assert_eq!(appointment, before);
    }

    #[test]
    fn only_a_booked_appointment_changes_and_only_once() {
        let (mut appointment, doctor) = booked();
        let tariff = doctor.details.tariff;
        appointment
            .close(&tariff, at("2021-07-01T09:00:00Z"), now())
            .unwrap();
        let closed = appointment.clone();
        let not_booked = Err(CareError::NotBooked {
            id: appointment.id,
            status: AppointmentStatus::Closed,
        });
        assert_eq!(
            appointment.close(&tariff, at("2021-07-01T09:10:00Z"), now()),
            not_booked
        );
        assert_eq!(appointment.cancel(None, now()), not_booked);
        assert_eq!(appointment.mark_no_show(now()), not_booked);
        assert_eq!(appointment, closed, "nothing changed");

        let (mut cancelled, _) = booked();
        let reason = CancelReason::parse(" Patient travelling ").unwrap();
        let event = cancelled.cancel(Some(reason), now()).unwrap();
        assert_eq!(event.event_type(), "appointment.cancelled");
        assert_eq!(event.data()["reason"], "Patient travelling");
        assert_eq!(
            cancelled.mark_no_show(now()).unwrap_err(),
            CareError::NotBooked {
                id: cancelled.id,
                status: AppointmentStatus::Cancelled
            }
        );

        let (mut absent, _) = booked();
        let event = absent.mark_no_show(now()).unwrap();
        assert_eq!(absent.status, AppointmentStatus::NoShow);
        assert_eq!(
            event.data(),
            serde_json::json!({
                "appointment_id": absent.id.to_string(),
                "patient_id": absent.patient_id.to_string(),
                "physician_id": absent.physician_id.to_string(),
            })
        );
        let (mut cancelled_quietly, _) = booked();
        let event = cancelled_quietly.cancel(None, now()).unwrap();
        assert_eq!(event.data()["reason"], serde_json::Value::Null);
    }

    #[test]
    fn document_000_close_must_name_the_stored_consultation() {
        let (appointment, _) = booked();
        let start = appointment.schedule.start();
        assert_eq!(
            appointment.check_is(appointment.patient_id, appointment.physician_id, start),
            Ok(())
        );
        assert_eq!(
            appointment.check_is(
                Uuid::now_v7(),
                appointment.physician_id,
                start + TimeDelta::seconds(1)
            ),
            Err(CareError::Mismatch {
                id: appointment.id,
                fields: vec![Field::PatientId, Field::ScheduledStart]
            })
        );
    }

    #[test]
    fn a_status_reads_back_what_it_writes() {
        for status in [
            AppointmentStatus::Booked,
            AppointmentStatus::Closed,
            AppointmentStatus::Cancelled,
            AppointmentStatus::NoShow,
        ] {
            assert_eq!(AppointmentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(AppointmentStatus::parse("open"), None);
    }

    #[test]
    fn a_reason_is_bounded_and_never_shown_in_debug() {
        assert!(CancelReason::parse("").is_err());
        assert!(CancelReason::parse(&"x".repeat(501)).is_err());
        assert!(CancelReason::parse("a\u{0}b").is_err());
        let reason = CancelReason::parse("Diagnosed with something private").unwrap();
        assert_eq!(format!("{reason:?}"), "CancelReason(<redacted>)");
        let (mut appointment, _) = booked();
        let event = appointment.cancel(Some(reason), now()).unwrap();
        let shown = format!("{event:?} {appointment:?}");
        assert!(!shown.contains("private"), "{shown}");
    }
}
