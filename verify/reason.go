package verify

import "fmt"

// Outcome is what the guard or the gate does with a person.
type Outcome uint8

// Outcomes, from mildest to strongest. A decision takes the strongest outcome
// of its reasons.
const (
	Pass   Outcome = iota // let the person through
	Refer                 // send the person to a second check
	Refuse                // do not let the person through
)

var outcomeNames = [...]string{Pass: "pass", Refer: "refer", Refuse: "refuse"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// MarshalText writes "pass", "refer" or "refuse".
func (o Outcome) MarshalText() ([]byte, error) {
	if int(o) >= len(outcomeNames) {
		return nil, fmt.Errorf("unknown outcome %d", uint8(o))
	}
	return []byte(o.String()), nil
}

// UnmarshalText reads "pass", "refer" or "refuse".
func (o *Outcome) UnmarshalText(b []byte) error {
	for i, n := range outcomeNames {
		if string(b) == n {
			*o = Outcome(i)
			return nil
		}
	}
	return fmt.Errorf("unknown outcome %q (want pass, refer or refuse)", b)
}

// Words returns the outcome as the guard's screen shows it.
func (o Outcome) Words() (zh, en string) {
	switch o {
	case Pass:
		return "通过", "Pass"
	case Refer:
		return "请到复核点", "Second check"
	}
	return "禁止通行", "Refused"
}

// Reason is why a decision is what it is: a stable code that programs match,
// with words for the guard in Chinese and English.
type Reason string

// The reasons. Codes never change meaning; new ones may be added.
const (
	Malformed           Reason = "malformed"
	UnsupportedVersion  Reason = "unsupported_version"
	UnknownIssuerKey    Reason = "unknown_issuer_key"
	IssuerKeyNotValid   Reason = "issuer_key_not_valid"
	BadIssuerSignature  Reason = "bad_issuer_signature"
	BadHolderSignature  Reason = "bad_holder_signature"
	NotYetValid         Reason = "not_yet_valid"
	Expired             Reason = "expired"
	PresentationStale   Reason = "presentation_stale"
	PresentationFuture  Reason = "presentation_future"
	Replayed            Reason = "replayed"
	Revoked             Reason = "revoked"
	StatusYellow        Reason = "status_yellow"
	StatusRed           Reason = "status_red"
	StaticCode          Reason = "static_code"
	IDMismatch          Reason = "id_mismatch"
	RevocationListStale Reason = "revocation_list_stale"
	TrustListStale      Reason = "trust_list_stale"
	ClockUntrusted      Reason = "clock_untrusted"
)

// The reasons of a passage (package passage): what the temperature, the ID
// check and the guard add to the code's reasons.
const (
	Fever              Reason = "fever"
	TemperatureMissing Reason = "temperature_missing"
	IDMissing          Reason = "id_missing"
	IDUnconfirmed      Reason = "id_unconfirmed"
	IDInvalid          Reason = "id_invalid"
	IDOnly             Reason = "id_only"
	CodeMissing        Reason = "code_missing"
	GuardOverride      Reason = "guard_override"
)

type words struct{ zh, en string }

var reasonWords = map[Reason]words{
	Malformed:           {"无法识别的码", "Not a valid health code"},
	UnsupportedVersion:  {"码的版本不受支持", "Code version not supported"},
	UnknownIssuerKey:    {"签发机构未知，可能是伪造码", "Unknown issuer: possibly forged"},
	IssuerKeyNotValid:   {"签发密钥在签发时无效或不适用于该地区", "Issuer key not valid at issue time or for this region"},
	BadIssuerSignature:  {"签发机构签名无效：伪造码", "Issuer signature invalid: forged code"},
	BadHolderSignature:  {"手机签名无效或缺失：不是本人手机出示", "Phone signature invalid or missing: not shown from the holder's phone"},
	NotYetValid:         {"健康码尚未生效", "Code not yet valid"},
	Expired:             {"健康码已过期", "Code expired"},
	PresentationStale:   {"码已过时：截图或录像", "Code too old: screenshot or recording"},
	PresentationFuture:  {"码的时间在未来：手机时间有误", "Code time is in the future: phone clock wrong"},
	Replayed:            {"此码已被扫描过：重放", "Code already scanned: replay"},
	Revoked:             {"健康码已被撤销", "Code revoked"},
	StatusYellow:        {"黄码", "Yellow code"},
	StatusRed:           {"红码", "Red code"},
	StaticCode:          {"纸质码：请核验身份证", "Paper code: check the ID card"},
	IDMismatch:          {"身份证与健康码不符", "ID card does not match the code"},
	RevocationListStale: {"撤销名单过期，请联网同步", "Revocation list out of date: sync needed"},
	TrustListStale:      {"信任列表过期，请联网同步", "Trust list out of date: sync needed"},
	ClockUntrusted:      {"设备时间不可信", "Device clock not trusted"},
	Fever:               {"发热：复测体温仍高，请到发热门诊", "Fever confirmed by a re-measure: to the fever clinic"},
	TemperatureMissing:  {"未完成测温", "Temperature not taken"},
	IDMissing:           {"未读取身份证", "ID card not read"},
	IDUnconfirmed:       {"身份证未经保安核验", "ID card not checked by the guard"},
	IDInvalid:           {"身份证号无效", "Not a valid ID number"},
	IDOnly:              {"无健康码：凭身份证和体温通行", "No code: passed on ID card and temperature"},
	CodeMissing:         {"未出示健康码或身份证", "No code or ID card shown"},
	GuardOverride:       {"保安人工决定", "Decided by the guard"},
}

// Reasons lists every reason code, in the order a decision lists them.
var Reasons = []Reason{
	Malformed, UnsupportedVersion, UnknownIssuerKey, BadIssuerSignature, IssuerKeyNotValid,
	BadHolderSignature, NotYetValid, Expired, PresentationStale, PresentationFuture, Replayed,
	Revoked, StatusYellow, StatusRed, IDMismatch, StaticCode,
	RevocationListStale, TrustListStale, ClockUntrusted,
}

// PassageReasons lists the reasons a passage adds, in the order it lists
// them after the code's.
var PassageReasons = []Reason{
	Fever, TemperatureMissing, IDMissing, IDUnconfirmed, IDInvalid, IDOnly, CodeMissing, GuardOverride,
}

// Words returns the reason in Chinese and English, for the guard.
func (r Reason) Words() (zh, en string) {
	w, ok := reasonWords[r]
	if !ok {
		return string(r), string(r)
	}
	return w.zh, w.en
}

// Known reports whether r is one of the defined reasons.
func (r Reason) Known() bool {
	_, ok := reasonWords[r]
	return ok
}

// UnmarshalText accepts only the defined codes.
func (r *Reason) UnmarshalText(b []byte) error {
	if !Reason(b).Known() {
		return fmt.Errorf("unknown reason %q", b)
	}
	*r = Reason(b)
	return nil
}
