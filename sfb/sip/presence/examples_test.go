package presence

// Bodies from the documents and from pidgin-sipe, with the document's
// line breaks and indentation.

// msPresBatchSub is MS-PRES 2.2.2.4.1's category subscribe request body.
const msPresBatchSub = `<batchSub xmlns="http://schemas.microsoft.com/2006/01/sip/batch-subscribe" uri="sip:bob@contoso.com" name="">
  <action name="subscribe" id="63792024">
    <adhocList>
      <resource uri="sip:alice@contoso.com"/>
      <resource uri="sip:john@contoso.com">
        <context>
     <subscriptionContext xmlns="http://schemas.microsoft.com/2008/09/sip/SubscriptionContext" majorVersion="1" minorVersion="0">
            <watcher>
              <contactList />
            </watcher>
     </subscriptionContext>
   </context>
      </resource>
    </adhocList>
    <categoryList xmlns="http://schemas.microsoft.com/2006/09/sip/categorylist">
      <category name="calendarData"/>
      <category name="contactCard"/>
      <category name="note"/>
      <category name="services"/>
      <category name="state"/>
    </categoryList>
  </action>
</batchSub>`

// sipeBatchSub is what pidgin-sipe's sipe_subscribe_presence_batched_to
// sends for two buddies, one just added.
const sipeBatchSub = "<batchSub xmlns=\"http://schemas.microsoft.com/2006/01/sip/batch-subscribe\" uri=\"sip:alice@contoso.com\" name=\"\">\n" +
	"<action name=\"subscribe\" id=\"63792024\">\n" +
	"<adhocList>\n<resource uri=\"sip:bob@contoso.com\"/>\n<resource uri=\"sip:carol@contoso.com\"><context/></resource>\n</adhocList>\n" +
	"<categoryList xmlns=\"http://schemas.microsoft.com/2006/09/sip/categorylist\">\n" +
	"<category name=\"calendarData\"/>\n" +
	"<category name=\"contactCard\"/>\n" +
	"<category name=\"note\"/>\n" +
	"<category name=\"state\"/>\n" +
	"</categoryList>\n" +
	"</action>\n" +
	"</batchSub>"

// msSIPBatchNotifyContentType and msSIPBatchNotify are MS-SIP 3.3.5.1's
// answer to a batched SUBSCRIBE (older servers: pidf parts, which this
// package skips).
const msSIPBatchNotifyContentType = `multipart/related; type="application/rlmi+xml";start=resourceList; boundary=50UBfW7LSCVLtggUPe5z`

const msSIPBatchNotify = "--50UBfW7LSCVLtggUPe5z\r\n" +
	"Content-Transfer-Encoding: binary\r\n" +
	"Content-ID: resourceList\r\n" +
	"Content-Type: application/rlmi+xml\r\n" +
	"\r\n" +
	`<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:watcher@tradewind.com" version="1" fullState="true" >
  <resource uri="sip:contact1@tradewind.com" >
    <instance id="0" state="active" cid="contact1@tradewind.com" />
  </resource>
  <resource uri="sip:contact2@tradewind.com" >
    <instance id="0" state="active" cid="contact2@tradewind.com" />
  </resource>
  <resource uri="sip:contact3@tradewind.com" >
    <instance id="0" state="active" cid="contact3@tradewind.com" />
  </resource>
</list>` + "\r\n" +
	"--50UBfW7LSCVLtggUPe5z\r\n" +
	"Content-Transfer-Encoding: binary\r\n" +
	"Content-ID: contact1@tradewind.com\r\n" +
	"Content-Type: text/xml+msrtc.pidf\r\n" +
	"\r\n" +
	`<presentity uri="contact1@tradewind.com" ><availability aggregate="300" description="" epid="8bfb9f3f24" /><activity aggregate="500" description="" epid="8bfb9f3f24" /><displayName displayName="Dave" /></presentity>` + "\r\n" +
	"--50UBfW7LSCVLtggUPe5z--\r\n"

// categoriesNotify is a categories NOTIFY to a watcher as an SfB server
// sends it (MS-PRES's category instance forms): the aggregate state in a
// meeting with a custom activity, a personal and an out-of-office note,
// the contact card and calendar data.
const categoriesNotify = `<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories" uri="sip:alice@contoso.com">
  <category name="state" instance="0" publishTime="2008-01-22T23:41:05.450" container="200" version="3" expireType="user">
    <state xsi:type="aggregateState" lastActive="2008-01-22T23:40:00" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.microsoft.com/2006/09/sip/state">
      <availability>6500</availability>
      <activity token="in-a-meeting" minAvailability="6500" maxAvailability="8999">
        <custom LCID="1033" xml:space="preserve">Team sync</custom>
      </activity>
      <device>mobile</device>
    </state>
  </category>
  <category name="note" instance="0" publishTime="2008-01-22T20:00:00.000" container="200" version="1" expireType="static">
    <note xmlns="http://schemas.microsoft.com/2006/09/sip/note">
      <body type="personal" uri="">Back at 3</body>
    </note>
  </category>
  <category name="note" instance="1073741825" publishTime="2008-01-21T08:00:00.000" container="200" version="2" expireType="static">
    <note xmlns="http://schemas.microsoft.com/2006/09/sip/note">
      <body type="OOF" uri="" startTime="2008-01-21T00:00:00Z" endTime="2008-01-28T00:00:00Z">On leave until Monday</body>
    </note>
  </category>
  <category name="contactCard" instance="0" publishTime="2008-01-01T00:00:00.000" container="200" version="1" expireType="static">
    <contactCard xmlns="http://schemas.microsoft.com/2006/09/sip/contactcard">
      <identity><name><displayName>Alice Example</displayName></name><email>alice@contoso.com</email></identity>
      <title>Engineer</title>
    </contactCard>
  </category>
  <category name="calendarData" instance="0" publishTime="2008-01-01T00:00:00.000" container="200" version="1" expireType="static">
    <calendarData xmlns="http://schemas.microsoft.com/2006/09/sip/calendarData" mailboxID="alice@contoso.com"><WorkingHours/></calendarData>
  </category>
</categories>`

// msPresRoamingSelf is MS-PRES 4.4.3's self-subscription BENOTIFY body
// (the categories part), with pidgin-sipe's publications of the user state
// and note as the server reflects them.
const msPresRoamingSelf = `<roamingData xmlns="http://schemas.microsoft.com/2006/09/sip/roaming-self"
           xmlns:cat="http://schemas.microsoft.com/2006/09/sip/categories"
           xmlns:con="http://schemas.microsoft.com/2006/09/sip/containers"
           xmlns:sub="http://schemas.microsoft.com/2006/09/sip/presence-subscribers"
           xmlns:del="http://schemas.microsoft.com/2007/09/sip/delegates">
  <categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories" uri="sip:alice@contoso.com">
    <category name="state" instance="1" publishTime="2008-01-22T23:41:05.450" container="2" version="1" expireType="user">
      <state xsi:type="aggregateState"
             xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
             xmlns="http://schemas.microsoft.com/2006/09/sip/state">
        <availability>3500</availability>
      </state>
    </category>
    <category name="state" instance="268435456"
              publishTime="2008-01-22T23:41:05.450" container="2"
              version="1" expireType="user">
      <state xsi:type="aggregateMachineState"
             endpointId="a8f9a3a8-ee61-56d7-b306-c67b08fb28d8"
             xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
             xmlns="http://schemas.microsoft.com/2006/09/sip/state">
        <availability>3500</availability>
      </state>
    </category>
    <category name="state" instance="536870912" publishTime="2008-01-22T23:41:05.450" container="2" version="7" expireType="static">
      <state xmlns="http://schemas.microsoft.com/2006/09/sip/state" manual="true" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="userState"><availability>6500</availability><endpointLocation/></state>
    </category>
    <category name="note" instance="0" publishTime="2008-01-22T23:41:05.450" container="200" version="4" expireType="static">
      <note xmlns="http://schemas.microsoft.com/2006/09/sip/note"><body type="personal" uri="">Lunch</body></note>
    </category>
    <category name="note" container="300"/>
  </categories>
</roamingData>`

// sipePublish is pidgin-sipe's sipe_ocs2007_category_publish for Busy with
// the note cleared (SIPE_PUB_XML_STATE_USER, SIPE_PUB_XML_STATE_MACHINE,
// SIPE_PUB_XML_PUBLICATION_CLEAR).
const sipePublish = `<publish xmlns="http://schemas.microsoft.com/2006/09/sip/rich-presence"><publications uri="sip:alice@contoso.com">` +
	`<publication categoryName="state" instance="536870912" container="2" version="7" expireType="static">` +
	`<state xmlns="http://schemas.microsoft.com/2006/09/sip/state" manual="true" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="userState">` +
	`<availability>6500</availability><endpointLocation/></state></publication>` +
	`<publication categoryName="state" instance="536870912" container="3" version="7" expireType="static">` +
	`<state xmlns="http://schemas.microsoft.com/2006/09/sip/state" manual="true" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="userState">` +
	`<availability>6500</availability><endpointLocation/></state></publication>` +
	`<publication categoryName="state" instance="926460663" container="2" version="22" expireType="endpoint">` +
	`<state xmlns="http://schemas.microsoft.com/2006/09/sip/state" manual="false" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="machineState">` +
	`<availability>3500</availability><endpointLocation/></state></publication>` +
	`<publication categoryName="note" instance="0" container="200" version="4" expireType="static" expires="0"/>` +
	`</publications></publish>`

// msPresFault is MS-PRES 2.2.2.10.4's version conflict body.
const msPresFault = `<Fault>
  <Faultcode>Client.BadCall.WrongDelta</Faultcode>
  <details>
    <operation index="1" version="1" curVersion="2" >
    </operation>
  </details>
</Fault>`

// roamingContacts is a contact list as pidgin-sipe's
// sipe_process_roaming_contacts reads it (MS-SIP's roaming contacts), and
// a delta to it.
const roamingContacts = `<contactList deltaNum="7" xmlns="http://schemas.microsoft.com/2006/09/sip/roaming-contacts">
  <group id="1" name="~" externalURI=""/>
  <group id="2" name="Team" externalURI=""/>
  <contact uri="bob@contoso.com" name="" groups="1 2" subscribed="true" externalURI=""/>
  <contact uri="sip:carol@contoso.com" name="Caro" groups="2" subscribed="true" externalURI=""/>
</contactList>`

const roamingContactsDelta = `<contactDelta deltaNum="8" prevDeltaNum="7" xmlns="http://schemas.microsoft.com/2006/09/sip/roaming-contacts">
  <addedContact uri="dave@contoso.com" name="" groups="1" subscribed="true"/>
  <deletedContact uri="bob@contoso.com"/>
  <modifiedGroup id="2" name="Core team"/>
</contactDelta>`
